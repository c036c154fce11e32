package awsapi

// exchangeOperations are the key-exchange control-plane operations beyond
// ImportKey/GetParametersForImport (export, CSRs).
func (s *Server) exchangeOperations() map[string]operation {
	return map[string]operation{}
}
