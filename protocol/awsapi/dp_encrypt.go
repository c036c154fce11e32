package awsapi

func (s *Server) dataEncryptionOperations() map[string]operation {
	return map[string]operation{}
}
