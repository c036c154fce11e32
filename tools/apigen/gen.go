package main

import (
	"bytes"
	_ "embed"
	"fmt"
	"go/ast"
	"go/format"
	"go/parser"
	"go/token"
	"path/filepath"
	"regexp"
	"regexp/syntax"
	"slices"
	"strconv"
	"strings"
)

//go:embed runtime.go.tmpl
var runtimeSrc string

// Identifiers the runtime part of every generated package declares.
var reserved = []string{
	"Validator", "URILabelSetter", "Operation", "ErrorShape", "ValidationError", "DecodeError",
	"Timestamp", "Operations", "ErrorShapes",
	"ServiceID", "APIVersion", "Protocol", "JSONVersion", "TargetPrefix", "SigningName",
}

// Method names generated on structures; a member with one of these names would clash.
var methodNames = []string{"Validate", "UnmarshalJSON", "MarshalJSON", "DecodeJSON", "AppendJSON", "SetURILabel", "Error", "ErrorCode"}

var stdImports = map[string]string{
	"bytes": "bytes", "json": "encoding/json", "errors": "errors", "reflect": "reflect",
	"regexp": "regexp", "slices": "slices", "strconv": "strconv", "strings": "strings",
	"time": "time", "utf8": "unicode/utf8", "sync": "sync", "atomic": "sync/atomic",
}

type gen struct {
	m         *model
	pkg       string
	source    string
	rest      bool // restJson1: members may be bound to URI labels
	w         bytes.Buffer
	idents    map[string]string // top-level identifier -> what declared it
	reOf      map[string]string // raw pattern -> Go variable
	reDecl    []string          // pattern variable declarations, in first-use order
	needs     map[string]bool   // memo for needsCheck
	notes     []string
	enumSet   map[string]string // enum shape -> "[A, B, C]"
	classVars []string          // pattern variables that are classPatterns
	seqVars   []string          // pattern variables that are seqPatterns
}

// generate turns the model at modelPath into the source of package pkg. notes
// lists the pattern rewrites it made.
func generate(modelPath, pkg string) ([]byte, []string, error) {
	m, err := loadModel(modelPath)
	if err != nil {
		return nil, nil, err
	}
	if !token.IsIdentifier(pkg) || pkg != strings.ToLower(pkg) {
		return nil, nil, fmt.Errorf("bad package name %q", pkg)
	}
	g := &gen{
		m: m, pkg: pkg, source: filepath.Base(modelPath),
		idents: map[string]string{}, reOf: map[string]string{}, needs: map[string]bool{},
		enumSet: map[string]string{},
	}
	switch m.Metadata.Protocol {
	case "json":
	case "rest-json":
		g.rest = true
	default:
		return nil, nil, fmt.Errorf("protocol %q is not supported", m.Metadata.Protocol)
	}
	if err := g.check(); err != nil {
		return nil, nil, err
	}
	if err := g.emit(); err != nil {
		return nil, nil, err
	}
	out, err := g.assemble()
	if err != nil {
		return nil, nil, err
	}
	return out, g.notes, nil
}

func (g *gen) p(format string, args ...any) { fmt.Fprintf(&g.w, format+"\n", args...) }

func (g *gen) declare(id, what string) error {
	if prev, ok := g.idents[id]; ok {
		return fmt.Errorf("identifier %s of %s clashes with %s", id, what, prev)
	}
	g.idents[id] = what
	return nil
}

func (g *gen) sortedShapes() []string {
	names := make([]string, 0, len(g.m.Shapes))
	for n := range g.m.Shapes {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

func (g *gen) shape(name string) *shape { return g.m.Shapes[name] }

// goName is the exported Go spelling of a shape or member name.
func goName(n string) (string, error) {
	if n == "" || !token.IsIdentifier(n) {
		return "", fmt.Errorf("name %q is not a Go identifier", n)
	}
	return strings.ToUpper(n[:1]) + n[1:], nil
}

func isEnum(s *shape) bool { return s.Type == "string" && len(s.Enum) > 0 }

// check rejects every model feature the generator cannot honour exactly, and
// reserves the package-level identifiers.
func (g *gen) check() error {
	for _, id := range reserved {
		g.idents[id] = "the runtime"
	}
	for _, name := range g.sortedShapes() {
		s := g.shape(name)
		ref := func(mb *member, role string) error {
			if mb == nil {
				return fmt.Errorf("shape %s: missing %s", name, role)
			}
			if g.shape(mb.Shape) == nil {
				return fmt.Errorf("shape %s: %s refers to unknown shape %q", name, role, mb.Shape)
			}
			return nil
		}
		switch s.Type {
		case "string", "boolean", "integer", "long", "float", "double", "timestamp", "blob":
		case "list":
			if err := ref(s.Member, "list member"); err != nil {
				return err
			}
		case "map":
			if err := ref(s.Key, "map key"); err != nil {
				return err
			}
			if err := ref(s.Value, "map value"); err != nil {
				return err
			}
			if g.shape(s.Key.Shape).Type != "string" {
				return fmt.Errorf("map %s: key shape %s is not a string", name, s.Key.Shape)
			}
		case "structure":
			if err := g.checkStructure(name, s, ref); err != nil {
				return err
			}
		default:
			return fmt.Errorf("shape %s: type %q is not supported", name, s.Type)
		}
		if s.Pattern != nil && s.Type != "string" {
			return fmt.Errorf("shape %s: pattern on a %s", name, s.Type)
		}
		if (s.Min != nil || s.Max != nil) && (s.Type == "float" || s.Type == "double" || s.Type == "boolean" || s.Type == "timestamp" || s.Type == "structure") {
			return fmt.Errorf("shape %s: min/max on a %s is not supported", name, s.Type)
		}
		if _, _, err := bound(s.Min); err != nil {
			return fmt.Errorf("shape %s: %w", name, err)
		}
		if _, _, err := bound(s.Max); err != nil {
			return fmt.Errorf("shape %s: %w", name, err)
		}
		if s.Type == "structure" || isEnum(s) {
			gn, err := goName(name)
			if err != nil {
				return fmt.Errorf("shape %s: %w", name, err)
			}
			if err := g.declare(gn, "shape "+name); err != nil {
				return err
			}
		}
		if isEnum(s) {
			gn, _ := goName(name)
			seen := map[string]bool{}
			for _, v := range s.Enum {
				if seen[v] {
					return fmt.Errorf("enum %s: duplicate value %q", name, v)
				}
				seen[v] = true
				c, err := enumConstName(gn, v)
				if err != nil {
					return fmt.Errorf("enum %s: %w", name, err)
				}
				if err := g.declare(c, "value "+v+" of enum "+name); err != nil {
					return err
				}
			}
		}
	}
	for _, on := range g.sortedOps() {
		if err := g.checkOperation(on); err != nil {
			return err
		}
	}
	return nil
}

func (g *gen) checkStructure(name string, s *shape, ref func(*member, string) error) error {
	fields := map[string]bool{}
	for _, mb := range s.Members {
		if err := ref(mb, "member "+mb.Name); err != nil {
			return err
		}
		f, err := goName(mb.Name)
		if err != nil {
			return fmt.Errorf("structure %s: %w", name, err)
		}
		if fields[f] || slices.Contains(methodNames, f) {
			return fmt.Errorf("structure %s: field %s clashes with another field or a generated method", name, f)
		}
		fields[f] = true
		if mb.JSONValue {
			return fmt.Errorf("structure %s member %s: jsonvalue is not supported", name, mb.Name)
		}
		switch mb.Location {
		case "":
		case "uri":
			if !g.rest {
				return fmt.Errorf("structure %s member %s: URI binding in a %s model", name, mb.Name, g.m.Metadata.Protocol)
			}
			if t := g.shape(mb.Shape).Type; t != "string" || isEnum(g.shape(mb.Shape)) {
				return fmt.Errorf("structure %s member %s: only plain string URI labels are supported", name, mb.Name)
			}
		default:
			return fmt.Errorf("structure %s member %s: location %q is not supported", name, mb.Name, mb.Location)
		}
	}
	for _, r := range s.Required {
		if !slices.ContainsFunc(s.Members, func(mb *member) bool { return mb.Name == r }) {
			return fmt.Errorf("structure %s: required member %s does not exist", name, r)
		}
	}
	if s.Union && len(s.Required) > 0 {
		return fmt.Errorf("union %s: has required members", name)
	}
	return nil
}

func (g *gen) sortedOps() []string {
	names := make([]string, 0, len(g.m.Operations))
	for n := range g.m.Operations {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

var labelRE = regexp.MustCompile(`\{([^{}]*)\}`)

// uriLabels returns the labels of a request URI template, without any
// greedy "+" suffix.
func uriLabels(uri string) []string {
	var out []string
	for _, m := range labelRE.FindAllStringSubmatch(uri, -1) {
		out = append(out, strings.TrimSuffix(m[1], "+"))
	}
	return out
}

func (g *gen) checkOperation(name string) error {
	op := g.m.Operations[name]
	if op.HTTP.Method == "" || !strings.HasPrefix(op.HTTP.RequestURI, "/") {
		return fmt.Errorf("operation %s: missing HTTP method or request URI", name)
	}
	if strings.Contains(op.HTTP.RequestURI, "?") {
		return fmt.Errorf("operation %s: query strings in the request URI are not supported", name)
	}
	for _, r := range append([]*shapeRef{op.Input, op.Output}, op.Errors...) {
		if r != nil && (g.shape(r.Shape) == nil || g.shape(r.Shape).Type != "structure") {
			return fmt.Errorf("operation %s: %q is not a structure", name, r.Shape)
		}
	}
	for _, r := range op.Errors {
		if !g.shape(r.Shape).Exception {
			return fmt.Errorf("operation %s: error %s is not an exception", name, r.Shape)
		}
	}
	labels := uriLabels(op.HTTP.RequestURI)
	var bound []string
	if op.Input != nil {
		for _, mb := range g.shape(op.Input.Shape).Members {
			if mb.Location == "uri" {
				bound = append(bound, labelName(mb))
			}
		}
	}
	slices.Sort(bound)
	sorted := slices.Sorted(slices.Values(labels))
	if !slices.Equal(bound, sorted) {
		return fmt.Errorf("operation %s: URI labels %v do not match input members bound to the URI %v", name, labels, bound)
	}
	return nil
}

func labelName(mb *member) string {
	if mb.LocationName != "" {
		return mb.LocationName
	}
	return mb.Name
}

// jsonName is the JSON object key of a body member.
func jsonName(mb *member) string {
	if mb.Location == "" && mb.LocationName != "" {
		return mb.LocationName
	}
	return mb.Name
}

// enumConstName spells the constant for enum value v of Go type typ,
// e.g. KeyUsage + "TR31_B0_BASE_DERIVATION_KEY" -> KeyUsageTr31B0BaseDerivationKey.
func enumConstName(typ, v string) (string, error) {
	var b strings.Builder
	b.WriteString(typ)
	alnum := func(r rune) bool { return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' }
	parts := strings.FieldsFunc(v, func(r rune) bool { return !alnum(r) })
	if len(parts) == 0 {
		return "", fmt.Errorf("value %q has no letters or digits", v)
	}
	for _, p := range parts {
		b.WriteString(strings.ToUpper(p[:1]) + strings.ToLower(p[1:]))
	}
	return b.String(), nil
}

// elemType is the Go type of a value of shape name.
func (g *gen) elemType(name string) string {
	s := g.shape(name)
	switch s.Type {
	case "string":
		if isEnum(s) {
			n, _ := goName(name)
			return n
		}
		return "string"
	case "boolean":
		return "bool"
	case "integer":
		return "int32"
	case "long":
		return "int64"
	case "float":
		return "float32"
	case "double":
		return "float64"
	case "timestamp":
		return "Timestamp"
	case "blob":
		return "[]byte"
	case "list":
		return "[]" + g.elemType(s.Member.Shape)
	case "map":
		return "map[string]" + g.elemType(s.Value.Shape)
	}
	n, _ := goName(name) // structure
	return n
}

// fieldType is the Go type of a structure member targeting shape name:
// a pointer, so that an absent member is told apart from a zero value, except
// for slices and maps, whose nil already means absent.
func (g *gen) fieldType(name string) string {
	switch g.shape(name).Type {
	case "list", "map", "blob":
		return g.elemType(name)
	}
	return "*" + g.elemType(name)
}

// hasScalarCheck reports whether a string or number shape has constraints.
func hasScalarCheck(s *shape) bool {
	switch s.Type {
	case "string":
		return isEnum(s) || s.Pattern != nil || s.Min != nil || s.Max != nil
	case "integer", "long", "blob":
		return s.Min != nil || s.Max != nil
	}
	return false
}

// needsCheck reports whether a value of shape name needs any validation code.
func (g *gen) needsCheck(name string) bool {
	if v, ok := g.needs[name]; ok {
		return v
	}
	s := g.shape(name)
	var v bool
	switch s.Type {
	case "structure":
		v = true
	case "list":
		v = s.Min != nil || s.Max != nil || g.needsCheck(s.Member.Shape)
	case "map":
		v = s.Min != nil || s.Max != nil || g.needsCheck(s.Key.Shape) || g.needsCheck(s.Value.Shape)
	default:
		v = hasScalarCheck(s)
	}
	g.needs[name] = v
	return v
}

func (g *gen) emit() error {
	g.emitService()
	for _, name := range g.sortedShapes() {
		if isEnum(g.shape(name)) {
			g.emitEnum(name)
		}
	}
	for _, name := range g.sortedShapes() {
		if g.shape(name).Type == "structure" {
			g.emitStructure(name)
		}
	}
	// Check functions for every constrained scalar, list and map shape that a
	// structure, list or map refers to.
	used := map[string]bool{}
	for _, s := range g.m.Shapes {
		for _, mb := range s.Members {
			used[mb.Shape] = true
		}
		for _, mb := range []*member{s.Member, s.Key, s.Value} {
			if mb != nil {
				used[mb.Shape] = true
			}
		}
	}
	for _, name := range g.sortedShapes() {
		if !used[name] || !g.needsCheck(name) {
			continue
		}
		var err error
		switch g.shape(name).Type {
		case "structure":
		case "list":
			g.emitList(name)
		case "map":
			g.emitMap(name)
		default:
			err = g.emitScalarCheck(name)
		}
		if err != nil {
			return err
		}
	}
	if len(g.reDecl) > 0 {
		g.p("// Compiled model patterns. apigen anchors each for a full match and checked at")
		g.p("// generation time that it compiles, so MustCompile cannot panic.")
		g.p("var (")
		for _, d := range g.reDecl {
			g.p("%s", d)
		}
		g.p(")")
		g.p("")
	}
	g.p("// classPatterns are the patterns matched without the regexp package.")
	g.p("var classPatterns = []*classPattern{%s}", strings.Join(g.classVars, ", "))
	g.p("")
	g.p("// seqPatterns are the patterns of literals and class runs matched without the regexp package.")
	g.p("var seqPatterns = []*seqPattern{%s}", strings.Join(g.seqVars, ", "))
	g.p("")
	g.emitOperations()
	g.emitErrors()
	return nil
}

func (g *gen) emitService() {
	md := g.m.Metadata
	g.p("// Service metadata from the model.")
	g.p("const (")
	g.p("ServiceID = %q", md.ServiceID)
	g.p("APIVersion = %q", md.APIVersion)
	g.p("Protocol = %q", md.Protocol)
	g.p("JSONVersion = %q", md.JSONVersion)
	g.p("TargetPrefix = %q", md.TargetPrefix)
	g.p("SigningName = %q", md.SigningName)
	g.p(")")
	g.p("")
}

func (g *gen) emitEnum(name string) {
	s := g.shape(name)
	gn, _ := goName(name)
	g.p("// %s is the model's %s enum.", gn, name)
	g.p("type %s string", gn)
	g.p("")
	g.p("// Values of %s, in model order.", gn)
	g.p("const (")
	for _, v := range s.Enum {
		c, _ := enumConstName(gn, v)
		g.p("%s %s = %q", c, gn, v)
	}
	g.p(")")
	g.p("")
	g.p("// Values returns every value of %s in model order.", gn)
	g.p("func (%s) Values() []%s {", gn, gn)
	g.p("return []%s{", gn)
	for _, v := range s.Enum {
		c, _ := enumConstName(gn, v)
		g.p("%s,", c)
	}
	g.p("}")
	g.p("}")
	g.p("")
	g.p("// IsKnown reports whether v is one of the values of %s.", gn)
	g.p("func (v %s) IsKnown() bool {", gn)
	g.p("switch v {")
	var cs []string
	for _, v := range s.Enum {
		c, _ := enumConstName(gn, v)
		cs = append(cs, c)
	}
	g.p("case %s:", strings.Join(cs, ", "))
	g.p("return true")
	g.p("}")
	g.p("return false")
	g.p("}")
	g.p("")
	g.enumSet[name] = "[" + strings.Join(s.Enum, ", ") + "]"
}

func (g *gen) emitStructure(name string) {
	s := g.shape(name)
	gn, _ := goName(name)
	switch {
	case s.Union:
		g.p("// %s is the model's %s union: exactly one member must be set.", gn, name)
	case s.Exception && s.Fault:
		g.p("// %s is the model's %s error (server fault).", gn, name)
	case s.Exception:
		g.p("// %s is the model's %s error (client fault).", gn, name)
	default:
		g.p("// %s is the model's %s structure.", gn, name)
	}
	g.p("type %s struct {", gn)
	var labels []*member
	for _, mb := range s.Members {
		f, _ := goName(mb.Name)
		var notes []string
		if slices.Contains(s.Required, mb.Name) {
			notes = append(notes, "required")
		}
		if g.shape(mb.Shape).Sensitive {
			notes = append(notes, "sensitive")
		}
		tag := jsonName(mb) + ",omitempty"
		if t := g.shape(mb.Shape).Type; t == "list" || t == "map" {
			// omitzero: an empty list still reaches the wire as [], nil does not.
			tag = jsonName(mb) + ",omitzero"
		}
		if mb.Location == "uri" {
			tag = "-"
			notes = append(notes, "URI label {"+labelName(mb)+"}")
			labels = append(labels, mb)
		}
		comment := ""
		if len(notes) > 0 {
			comment = " // " + strings.Join(notes, "; ")
		}
		g.p("%s %s `json:%q`%s", f, g.fieldType(mb.Shape), tag, comment)
	}
	g.p("}")
	g.p("")
	g.emitUnmarshal(gn, s)
	g.emitDecodeFast(gn, s)
	g.emitAppendJSON(gn, s)
	g.emitValidate(gn, s)
	if len(labels) > 0 {
		g.p("// SetURILabel implements URILabelSetter.")
		g.p("func (s *%s) SetURILabel(label, value string) bool {", gn)
		g.p("switch label {")
		for _, mb := range labels {
			f, _ := goName(mb.Name)
			g.p("case %q:", labelName(mb))
			g.p("s.%s = &value", f)
			g.p("return true")
		}
		g.p("}")
		g.p("return false")
		g.p("}")
		g.p("")
	}
	if s.Exception {
		g.emitErrorMethods(gn, name, s)
	}
}

func (g *gen) emitUnmarshal(gn string, s *shape) {
	g.p("// UnmarshalJSON decodes the body members of %s, matching names exactly.", gn)
	g.p("func (s *%s) UnmarshalJSON(b []byte) error {", gn)
	var body []*member
	for _, mb := range s.Members {
		if mb.Location == "" {
			body = append(body, mb)
		}
	}
	if len(body) == 0 {
		g.p("return decodeObject(b, func(string) any { return nil })")
		g.p("}")
		g.p("")
		return
	}
	g.p("return decodeObject(b, func(name string) any {")
	g.p("switch name {")
	for _, mb := range body {
		f, _ := goName(mb.Name)
		g.p("case %q:", jsonName(mb))
		g.p("return &s.%s", f)
	}
	g.p("}")
	g.p("return nil")
	g.p("})")
	g.p("}")
	g.p("")
}

// bodyMembers are the members of s that travel in the JSON body.
func bodyMembers(s *shape) []*member {
	var body []*member
	for _, mb := range s.Members {
		if mb.Location == "" {
			body = append(body, mb)
		}
	}
	return body
}

// emitDecodeFast emits DecodeJSON and the structure's fast decoder.
func (g *gen) emitDecodeFast(gn string, s *shape) {
	g.p("// DecodeJSON decodes the JSON document data into s, which must be zero (as")
	g.p("// from new), exactly as json.Unmarshal(data, s) does: same result, same")
	g.p("// errors. Usual documents take a fast path without reflection.")
	g.p("func (s *%s) DecodeJSON(data []byte) error {", gn)
	g.p("if fastDecode(data, s.decodeFast) {")
	g.p("return nil")
	g.p("}")
	g.p("*s = %s{}", gn)
	g.p("return json.Unmarshal(data, s)")
	g.p("}")
	g.p("")
	g.p("// decodeFast decodes an object or null on the fast path, or reports false.")
	g.p("func (s *%s) decodeFast(d *fastDecoder) bool {", gn)
	g.p("obj, ok := d.open()")
	g.p("if !obj {")
	g.p("return ok")
	g.p("}")
	body := bodyMembers(s)
	if len(body) > 0 {
		g.p("var seen [%d]bool", len(body))
	}
	g.p("for first := true; ; first = false {")
	if len(body) > 0 {
		g.p("name, more := d.member(first)")
	} else {
		g.p("_, more := d.member(first)")
	}
	g.p("if !more {")
	g.p("return !d.bad")
	g.p("}")
	if len(body) > 0 {
		g.p("switch name {")
		for i, mb := range body {
			f, _ := goName(mb.Name)
			g.p("case %q:", jsonName(mb))
			call := g.fastDecodeCall(mb.Shape, "&s."+f)
			if call == "" {
				g.p("return false // not on the fast path")
				continue
			}
			g.p("if seen[%d] || !%s {", i, call)
			g.p("return false")
			g.p("}")
			g.p("seen[%d] = true", i)
		}
		g.p("default:")
	}
	g.p("if !d.skip() {")
	g.p("return false")
	g.p("}")
	if len(body) > 0 {
		g.p("}")
	}
	g.p("}")
	g.p("}")
	g.p("")
}

// fastDecodeCall is the fast-path decode of a member of shape name into
// the field at ptr, or "" when that shape is left to the reflective path.
func (g *gen) fastDecodeCall(name, ptr string) string {
	s := g.shape(name)
	switch s.Type {
	case "string":
		if isEnum(s) {
			return "decodeString(d, " + ptr + ")"
		}
		return "d.str(" + ptr + ")"
	case "boolean":
		return "decodeBool(d, " + ptr + ")"
	case "integer":
		return "decodeInt(d, " + ptr + ", -2147483648, 2147483647)"
	case "long":
		return "decodeInt(d, " + ptr + ", -9223372036854775808, 9223372036854775807)"
	case "timestamp":
		return "decodeTimestamp(d, " + ptr + ")"
	case "structure":
		return "decodeStruct[" + g.elemType(name) + "](d, " + ptr + ")"
	case "list":
		if e := g.fastElem(s.Member.Shape); e != "" {
			return "decodeList(d, " + ptr + ", " + e + ")"
		}
	case "map":
		if e := g.fastElem(s.Value.Shape); e != "" {
			return "decodeMap(d, " + ptr + ", " + e + ")"
		}
	}
	return ""
}

// fastElem is the fast decoder of a list element or map value of shape
// name, or "".
func (g *gen) fastElem(name string) string {
	switch g.shape(name).Type {
	case "string":
		return "decodeStringElem[" + g.elemType(name) + "]"
	case "structure":
		return "structElem[" + g.elemType(name) + "]"
	}
	return ""
}

// emitAppendJSON emits AppendJSON, an encoder equal to json.Marshal's.
func (g *gen) emitAppendJSON(gn string, s *shape) {
	g.p("// AppendJSON appends s encoded exactly as json.Marshal(s) encodes it.")
	g.p("func (s *%s) AppendJSON(b []byte) ([]byte, error) {", gn)
	g.p("if s == nil {")
	g.p("return append(b, \"null\"...), nil")
	g.p("}")
	body := bodyMembers(s)
	if len(body) == 0 {
		g.p("return append(b, \"{}\"...), nil")
		g.p("}")
		g.p("")
		return
	}
	g.p("var err error")
	g.p("first := true")
	g.p("b = append(b, '{')")
	for _, mb := range body {
		f, _ := goName(mb.Name)
		v := "s." + f
		t := g.shape(mb.Shape).Type
		g.p("if %s != nil {", v)
		g.p("b = appendJSONKey(b, first, %q)", jsonName(mb))
		g.p("first = false")
		switch t {
		case "list":
			g.p("b = append(b, '[')")
			g.p("for i := range %s {", v)
			g.p("if i > 0 {")
			g.p("b = append(b, ',')")
			g.p("}")
			g.appendValue(s.Members, g.shape(mb.Shape).Member.Shape, v+"[i]", false)
			g.p("}")
			g.p("b = append(b, ']')")
		case "map":
			g.p("b = append(b, '{')")
			g.p("for i, k := range sortedKeys(%s) {", v)
			g.p("if i > 0 {")
			g.p("b = append(b, ',')")
			g.p("}")
			g.p("b = appendJSONString(b, k)")
			g.p("b = append(b, ':')")
			g.p("e := %s[k]", v)
			g.appendValue(s.Members, g.shape(mb.Shape).Value.Shape, "e", false)
			g.p("}")
			g.p("b = append(b, '}')")
		default:
			g.appendValue(s.Members, mb.Shape, v, true)
		}
		g.p("}")
	}
	g.p("_ = first")
	g.p("return append(b, '}'), err")
	g.p("}")
	g.p("")
}

// appendValue emits the encoding of v, a value of shape name (through a
// pointer when ptr), onto b.
func (g *gen) appendValue(_ memberList, name, v string, ptr bool) {
	deref := v
	if ptr {
		deref = "*" + v
	}
	switch g.shape(name).Type {
	case "string":
		g.p("b = appendJSONString(b, string(%s))", deref)
	case "boolean":
		g.p("b = strconv.AppendBool(b, %s)", deref)
	case "integer", "long":
		g.p("b = strconv.AppendInt(b, int64(%s), 10)", deref)
	case "structure":
		if ptr {
			g.p("if b, err = %s.AppendJSON(b); err != nil {", v)
		} else {
			g.p("if b, err = (&%s).AppendJSON(b); err != nil {", v)
		}
		g.p("return b, err")
		g.p("}")
	default: // timestamps, floats, blobs, nested lists and maps: encoding/json
		g.p("if b, err = appendJSONValue(b, %s); err != nil {", v)
		g.p("return b, err")
		g.p("}")
	}
}

func (g *gen) emitValidate(gn string, s *shape) {
	g.p("// Validate implements Validator.")
	g.p("func (s *%s) Validate(path string) error {", gn)
	g.p("if s == nil {")
	g.p("return nil")
	g.p("}")
	if s.Union {
		var names []string
		g.p("set := 0")
		for _, mb := range s.Members {
			f, _ := goName(mb.Name)
			g.p("if s.%s != nil {", f)
			g.p("set++")
			g.p("}")
			names = append(names, mb.Name)
		}
		g.p("if set != 1 {")
		g.p("return unionViolation(path, set, %q)", strings.Join(names, ", "))
		g.p("}")
	}
	for _, mb := range s.Members {
		f, _ := goName(mb.Name)
		field := "s." + f
		path := fmt.Sprintf("joinPath(path, %q)", mb.Name)
		required := slices.Contains(s.Required, mb.Name)
		if required {
			g.p("if %s == nil {", field)
			g.p("return missing(path, %q)", mb.Name)
			g.p("}")
		}
		if !g.needsCheck(mb.Shape) {
			continue
		}
		value := field // the value checkValue sees: pointers are dereferenced
		switch g.shape(mb.Shape).Type {
		case "structure", "list", "map", "blob":
		default:
			value = "*" + field
		}
		if !required {
			g.p("if %s != nil {", field)
		}
		g.checkValue(mb.Shape, value, path)
		if !required {
			g.p("}")
		}
	}
	g.p("return nil")
	g.p("}")
	g.p("")
}

// checkValue emits code that returns an error when the value expression v of
// shape name, at the member path expression path, breaks a constraint.
func (g *gen) checkValue(name, v, path string) {
	s := g.shape(name)
	gn, _ := goName(name)
	switch s.Type {
	case "structure":
		g.p("if err := %s.Validate(%s); err != nil {", v, path)
		g.p("return err")
		g.p("}")
	case "list", "map":
		g.p("if err := validate%s(%s, %s); err != nil {", gn, path, v)
		g.p("return err")
		g.p("}")
	default:
		g.p("if c := check%s(%s); c != \"\" {", gn, v)
		g.p("return violation(%s, %s, c)", path, g.shownExpr(s, v))
		g.p("}")
	}
}

// shownExpr is the expression that shows value v in a message, or "" for
// sensitive shapes and values that are not shown.
func (g *gen) shownExpr(s *shape, v string) string {
	if s.Sensitive {
		return `""`
	}
	switch {
	case isEnum(s):
		return "shown(string(" + v + "))"
	case s.Type == "string":
		return "shown(" + v + ")"
	case s.Type == "integer" || s.Type == "long":
		return "shownInt(int64(" + v + "))"
	}
	return `""`
}

func (g *gen) emitScalarCheck(name string) error {
	s := g.shape(name)
	gn, _ := goName(name)
	min, hasMin, _ := bound(s.Min)
	max, hasMax, _ := bound(s.Max)
	g.p("// check%s returns the constraint of shape %s that v breaks, or \"\".", gn, name)
	g.p("func check%s(v %s) string {", gn, g.elemType(name))
	switch s.Type {
	case "string":
		str := "v"
		if isEnum(s) {
			g.p("if !v.IsKnown() {")
			g.p("return %q", "Member must satisfy enum value set: "+g.enumSet[name])
			g.p("}")
			str = "string(v)"
		}
		// The pattern comes first: for a short value its message says more.
		if s.Pattern != nil {
			re, err := g.pattern(name, *s.Pattern)
			if err != nil {
				return err
			}
			g.p("if !%s.MatchString(%s) {", re, str)
			g.p("return %q", "Member must satisfy regular expression pattern: "+*s.Pattern)
			g.p("}")
		}
		g.lengthChecks("runeCount("+str+")", min, hasMin, max, hasMax)
	case "blob":
		g.lengthChecks("len(v)", min, hasMin, max, hasMax)
	default: // integer, long
		if hasMin {
			g.p("if v < %d {", min)
			g.p("return %q", fmt.Sprintf("Member must have value greater than or equal to %d", min))
			g.p("}")
		}
		if hasMax {
			g.p("if v > %d {", max)
			g.p("return %q", fmt.Sprintf("Member must have value less than or equal to %d", max))
			g.p("}")
		}
	}
	g.p("return \"\"")
	g.p("}")
	g.p("")
	return nil
}

func (g *gen) lengthChecks(str string, min int64, hasMin bool, max int64, hasMax bool) {
	hasMin = hasMin && min > 0
	if !hasMin && !hasMax {
		return
	}
	g.p("n := %s", str)
	if hasMin {
		g.p("if n < %d {", min)
		g.p("return %q", fmt.Sprintf("Member must have length greater than or equal to %d", min))
		g.p("}")
	}
	if hasMax {
		g.p("if n > %d {", max)
		g.p("return %q", fmt.Sprintf("Member must have length less than or equal to %d", max))
		g.p("}")
	}
}

// countChecks emits the @length checks of a list or map held in v.
func (g *gen) countChecks(s *shape) {
	min, hasMin, _ := bound(s.Min)
	max, hasMax, _ := bound(s.Max)
	if hasMin && min > 0 {
		g.p("if len(v) < %d {", min)
		g.p("return violation(path, \"\", %q)", fmt.Sprintf("Member must have length greater than or equal to %d", min))
		g.p("}")
	}
	if hasMax {
		g.p("if len(v) > %d {", max)
		g.p("return violation(path, \"\", %q)", fmt.Sprintf("Member must have length less than or equal to %d", max))
		g.p("}")
	}
}

func (g *gen) emitList(name string) {
	s := g.shape(name)
	gn, _ := goName(name)
	g.p("// validate%s checks a value of list shape %s at path.", gn, name)
	g.p("func validate%s(path string, v %s) error {", gn, g.elemType(name))
	g.countChecks(s)
	if g.needsCheck(s.Member.Shape) {
		g.p("for i := range v {")
		g.checkValue(s.Member.Shape, "v[i]", "indexPath(path, i)")
		g.p("}")
	}
	g.p("return nil")
	g.p("}")
	g.p("")
}

func (g *gen) emitMap(name string) {
	s := g.shape(name)
	gn, _ := goName(name)
	ks := g.shape(s.Key.Shape)
	g.p("// validate%s checks a value of map shape %s at path, in key order.", gn, name)
	g.p("func validate%s(path string, v %s) error {", gn, g.elemType(name))
	g.countChecks(s)
	checkKey, checkVal := g.needsCheck(s.Key.Shape), g.needsCheck(s.Value.Shape)
	if checkKey || checkVal {
		g.p("keys := make([]string, 0, len(v))")
		g.p("for k := range v {")
		g.p("keys = append(keys, k)")
		g.p("}")
		g.p("slices.Sort(keys)")
		g.p("for _, k := range keys {")
		if checkKey {
			kn, _ := goName(s.Key.Shape)
			arg := "k"
			if isEnum(ks) {
				arg = kn + "(k)"
			}
			g.p("if c := check%s(%s); c != \"\" {", kn, arg)
			g.p("return violation(path, \"\", \"Map keys must satisfy constraint: [\"+c+\"]\")")
			g.p("}")
		}
		if checkVal {
			g.p("e := v[k]")
			g.checkValue(s.Value.Shape, "e", fmt.Sprintf("keyPath(path, k, %t)", ks.Sensitive))
		}
		g.p("}")
	}
	g.p("return nil")
	g.p("}")
	g.p("")
}

// pattern returns the Go variable holding the compiled form of pattern p,
// first used by shape name.
func (g *gen) pattern(name, p string) (string, error) {
	if v, ok := g.reOf[p]; ok {
		return v, nil
	}
	re, notes, err := translatePattern(p)
	if err != nil {
		return "", fmt.Errorf("shape %s: %w", name, err)
	}
	gn, _ := goName(name)
	v := "re" + gn
	g.reOf[p] = v
	decl := fmt.Sprintf("// model pattern %s\n", strconv.Quote(p))
	for _, n := range notes {
		decl += "// apigen: " + n + "\n"
		g.notes = append(g.notes, fmt.Sprintf("%s: %s", name, n))
	}
	lit := strconv.Quote(re)
	if !strings.ContainsAny(re, "`\n\r") {
		lit = "`" + re + "`"
	}
	if cp := classPatternOf(re); cp != "" {
		// A run of one ASCII class with a length rule: matched without
		// the regexp package (the generated tests compare it with regexp).
		decl += fmt.Sprintf("%s = &classPattern{re: %s, %s}", v, lit, cp)
		g.classVars = append(g.classVars, v)
	} else if sp := seqPatternOf(re); sp != "" {
		// Literals and class runs, greedily exact (key ARNs and aliases,
		// which regexp matches slowly by backtracking their alternation):
		// matched without the regexp package (the generated tests compare
		// it with regexp).
		decl += fmt.Sprintf("%s = &seqPattern{re: %s, %s}", v, lit, sp)
		g.seqVars = append(g.seqVars, v)
	} else {
		decl += fmt.Sprintf("%s = regexp.MustCompile(%s)", v, lit)
	}
	g.reDecl = append(g.reDecl, decl)
	return v, nil
}

// classPatternOf returns the fields of a classPattern equal to the anchored
// RE2 pattern re, or "" when re is not of the forms it covers: ^C+$, ^C*$,
// ^C{m,n}$, ^(?:CC…)+$ and ^(?:C{a}|C{b}|…)$, for one class C of ASCII
// characters without case folding.
func classPatternOf(re string) string {
	r, err := syntax.Parse(re, syntax.Perl)
	if err != nil || r.Op != syntax.OpConcat || len(r.Sub) != 3 || r.Sub[0].Op != syntax.OpBeginText || r.Sub[2].Op != syntax.OpEndText {
		return ""
	}
	var class []rune
	sameClass := func(c *syntax.Regexp) bool {
		if c.Op != syntax.OpCharClass || c.Flags&syntax.FoldCase != 0 {
			return false
		}
		for _, x := range c.Rune {
			if x >= 0x80 {
				return false
			}
		}
		if class == nil {
			class = c.Rune
		}
		return slices.Equal(class, c.Rune)
	}
	minLen, maxLen, step := 0, -1, 1
	var lengths []string
	switch x := r.Sub[1]; x.Op {
	case syntax.OpCharClass:
		if !sameClass(x) {
			return ""
		}
		minLen, maxLen = 1, 1
	case syntax.OpPlus, syntax.OpStar:
		if x.Op == syntax.OpPlus {
			minLen = 1
		}
		sub := x.Sub[0]
		switch {
		case sameClass(sub):
		case sub.Op == syntax.OpConcat && len(sub.Sub) > 1:
			for _, c := range sub.Sub {
				if !sameClass(c) {
					return ""
				}
			}
			step = len(sub.Sub)
			minLen *= step
		default:
			return ""
		}
	case syntax.OpRepeat:
		if !sameClass(x.Sub[0]) {
			return ""
		}
		minLen, maxLen = x.Min, x.Max
	case syntax.OpAlternate:
		for _, a := range x.Sub {
			if a.Op != syntax.OpRepeat || a.Min != a.Max || !sameClass(a.Sub[0]) {
				return ""
			}
			lengths = append(lengths, strconv.Itoa(a.Min))
		}
		minLen = 0
	default:
		return ""
	}
	var set [2]uint64
	for i := 0; i+1 < len(class); i += 2 {
		for c := class[i]; c <= class[i+1]; c++ {
			set[c>>6] |= 1 << (c & 63)
		}
	}
	out := fmt.Sprintf("set: [2]uint64{%#x, %#x}, min: %d, max: %d, step: %d", set[0], set[1], minLen, maxLen, step)
	if lengths != nil {
		out += ", lengths: []int{" + strings.Join(lengths, ", ") + "}"
	}
	return out
}

func (g *gen) emitErrorMethods(gn, name string, s *shape) {
	msg := ""
	for _, mb := range s.Members {
		if (mb.Name == "Message" || mb.Name == "message") && g.shape(mb.Shape).Type == "string" && !isEnum(g.shape(mb.Shape)) {
			msg, _ = goName(mb.Name)
		}
	}
	g.p("// ErrorCode returns the error shape name, %q.", name)
	g.p("func (e *%s) ErrorCode() string { return %q }", gn, name)
	g.p("")
	g.p("func (e *%s) Error() string {", gn)
	if msg != "" {
		g.p("if e.%s != nil {", msg)
		g.p("return %q + *e.%s", name+": ", msg)
		g.p("}")
	}
	g.p("return %q", name)
	g.p("}")
	g.p("")
}

func (g *gen) emitOperations() {
	g.p("// Operations describes every operation of the model, by name.")
	g.p("var Operations = map[string]Operation{")
	for _, on := range g.sortedOps() {
		op := g.m.Operations[on]
		code := op.HTTP.ResponseCode
		if code == 0 {
			code = 200
		}
		g.p("%q: {", on)
		g.p("Name: %q,", on)
		g.p("Method: %q,", op.HTTP.Method)
		g.p("RequestURI: %q,", op.HTTP.RequestURI)
		g.p("ResponseCode: %d,", code)
		if l := uriLabels(op.HTTP.RequestURI); len(l) > 0 {
			g.p("URILabels: %s,", goStrings(l))
		}
		var errs []string
		for _, e := range op.Errors {
			errs = append(errs, e.Shape)
		}
		slices.Sort(errs)
		if len(errs) > 0 {
			g.p("Errors: %s,", goStrings(errs))
		}
		if op.Input != nil {
			in, _ := goName(op.Input.Shape)
			g.p("NewInput: func() Validator { return new(%s) },", in)
		}
		if op.Output != nil {
			out, _ := goName(op.Output.Shape)
			g.p("NewOutput: func() any { return new(%s) },", out)
		}
		g.p("},")
	}
	g.p("}")
	g.p("")
}

func (g *gen) emitErrors() {
	g.p("// ErrorShapes lists every error structure of the model, by name.")
	g.p("var ErrorShapes = []ErrorShape{")
	for _, name := range g.sortedShapes() {
		s := g.shape(name)
		if s.Type != "structure" || !s.Exception {
			continue
		}
		gn, _ := goName(name)
		fault := "client"
		if s.Fault {
			fault = "server"
		}
		status := 0
		if s.Error != nil {
			status = s.Error.HTTPStatusCode
		}
		var members []string
		for _, mb := range s.Members {
			members = append(members, jsonName(mb))
		}
		g.p("{")
		g.p("Name: %q,", name)
		g.p("Fault: %q,", fault)
		g.p("HTTPStatus: %d,", status)
		if len(members) > 0 {
			g.p("Members: %s,", goStrings(members))
		}
		g.p("New: func() error { return new(%s) },", gn)
		g.p("},")
	}
	g.p("}")
}

func goStrings(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = strconv.Quote(s)
	}
	return "[]string{" + strings.Join(q, ", ") + "}"
}

// assemble prepends the header, package clause and the imports the code
// uses, and gofmts the result.
func (g *gen) assemble() ([]byte, error) {
	md := g.m.Metadata
	body := "// ---- Runtime shared by the generated code ----\n\n" + runtimeSrc + "\n// ---- Generated from the model ----\n\n" + g.w.String()
	// Find the packages the body refers to.
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "", "package "+g.pkg+"\n"+body, parser.SkipObjectResolution)
	if err != nil {
		return nil, fmt.Errorf("generated code does not parse: %w", err)
	}
	used := map[string]bool{}
	ast.Inspect(f, func(n ast.Node) bool {
		if se, ok := n.(*ast.SelectorExpr); ok {
			if id, ok := se.X.(*ast.Ident); ok {
				if _, std := stdImports[id.Name]; std {
					used[stdImports[id.Name]] = true
				}
			}
		}
		return true
	})
	var imports []string
	for p := range used {
		imports = append(imports, p)
	}
	slices.Sort(imports)
	var b bytes.Buffer
	b.WriteString("// Code generated by apigen. DO NOT EDIT.\n")
	fmt.Fprintf(&b, "// Source: %s (%s, protocol %s).\n\n", g.source, md.UID, md.Protocol)
	fmt.Fprintf(&b, "package %s\n\nimport (\n", g.pkg)
	for _, p := range imports {
		fmt.Fprintf(&b, "%q\n", p)
	}
	b.WriteString(")\n\n")
	b.WriteString(body)
	out, err := format.Source(b.Bytes())
	if err != nil {
		return nil, fmt.Errorf("gofmt generated code: %w", err)
	}
	return out, nil
}
