package awsapi

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"sort"
	"strings"

	"payhsm/fault"
	dp "payhsm/protocol/awsapi/dpshape"
)

// route is one data-plane operation's request URI, split into segments; a
// segment "{Label}" binds a URI label.
type route struct {
	name     string
	segments []string
	op       operation
}

// dataOperations gathers the data-plane handlers; each group of operations
// lives in its own file.
func (s *Server) dataOperations() map[string]operation {
	all := map[string]operation{}
	for _, group := range []map[string]operation{
		s.dataEncryptionOperations(),
		s.pinOperations(),
		s.cardOperations(),
		s.keyMaterialOperations(),
		s.as2805Operations(),
	} {
		for name, op := range group {
			all[name] = op
		}
	}
	return all
}

// dataRoutes builds the routing table from the model's request URIs.
func (s *Server) dataRoutes() []route {
	var routes []route
	for name, op := range s.dataOperations() {
		m, ok := dp.Operations[name]
		if !ok || m.Method != http.MethodPost {
			panic("awsapi: data-plane handler for unknown operation " + name)
		}
		routes = append(routes, route{name: name, segments: strings.Split(strings.TrimPrefix(m.RequestURI, "/"), "/"), op: op})
	}
	sort.Slice(routes, func(i, j int) bool { return routes[i].name < routes[j].name })
	return routes
}

// match finds the route of an escaped request path and its percent-decoded labels.
func (s *Server) match(escapedPath string) (route, map[string]string, bool) {
	var arr [8]string
	segs := arr[:0]
	for seg := range strings.SplitSeq(strings.TrimPrefix(escapedPath, "/"), "/") {
		segs = append(segs, seg)
	}
	for _, rt := range s.routes {
		if len(rt.segments) != len(segs) {
			continue
		}
		var labels map[string]string
		ok := true
		for i, want := range rt.segments {
			if strings.HasPrefix(want, "{") && strings.HasSuffix(want, "}") {
				v, err := url.PathUnescape(segs[i])
				if err != nil || v == "" {
					ok = false
					break
				}
				if labels == nil {
					labels = map[string]string{}
				}
				labels[want[1:len(want)-1]] = v
			} else if segs[i] != want {
				ok = false
				break
			}
		}
		if ok {
			return rt, labels, true
		}
	}
	return route{}, nil, false
}

// dataException is the AWS exception name and status of a fault kind on the data plane.
func dataException(k fault.Kind) (string, int) {
	switch k {
	case fault.Validation, fault.Conflict, fault.QuotaExceeded:
		return "ValidationException", http.StatusBadRequest
	case fault.VerificationFailed:
		return "VerificationFailedException", http.StatusBadRequest
	case fault.NotFound:
		return "ResourceNotFoundException", http.StatusNotFound
	case fault.AccessDenied:
		return "AccessDeniedException", http.StatusForbidden
	case fault.Throttling:
		return "ThrottlingException", http.StatusTooManyRequests
	default:
		return "InternalServerException", http.StatusInternalServerError
	}
}

// writeDataError writes a restJson1 error: the name in X-Amzn-ErrorType and
// the error shape's members in the body.
func writeDataError(w http.ResponseWriter, err error) {
	var pe *protocolError
	var name string
	var status int
	var body any
	if errors.As(err, &pe) {
		name, status = pe.name, pe.status
		body = map[string]string{"message": pe.message}
	} else {
		f := fault.As(err)
		msg := fault.ClientMessage(f)
		name, status = dataException(f.Kind)
		switch name {
		case "ValidationException":
			v := dp.ValidationException{Message: &msg}
			var am *atMember
			if errors.As(err, &am) && am.path != "" {
				v.FieldList = []dp.ValidationExceptionField{{Path: &am.path, Message: &msg}}
			}
			body = v
		case "VerificationFailedException":
			r := dp.VerificationFailedReason(f.Reason)
			body = dp.VerificationFailedException{Reason: &r, Message: &msg}
		case "ResourceNotFoundException":
			body = map[string]string{"ResourceId": f.Resource, "message": msg}
		default:
			body = map[string]string{"Message": msg}
		}
	}
	b, _ := json.Marshal(body)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Amzn-ErrorType", name)
	w.WriteHeader(status)
	_, _ = w.Write(b)
}
