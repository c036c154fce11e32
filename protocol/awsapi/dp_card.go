package awsapi

func (s *Server) cardOperations() map[string]operation {
	return map[string]operation{}
}
