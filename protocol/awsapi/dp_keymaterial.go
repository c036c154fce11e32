package awsapi

func (s *Server) keyMaterialOperations() map[string]operation {
	return map[string]operation{}
}
