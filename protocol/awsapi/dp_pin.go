package awsapi

func (s *Server) pinOperations() map[string]operation {
	return map[string]operation{}
}
