package api

import (
	_ "embed"
	"net/http"
)

// openAPISpec documents the HTTP API. It is kept next to the handlers and
// served from the binary so that the document and the routes ship together;
// TestOpenAPIDocumentsEveryRoute keeps them in step.
//
//go:embed openapi.yaml
var openAPISpec []byte

func init() { routeGroups = append(routeGroups, (*Server).registerOpenAPI) }

// registerOpenAPI serves the document to every role: it describes the API,
// not its data, but stays under /v1 so that every /v1 call is authenticated.
func (s *Server) registerOpenAPI() {
	s.Handle("GET /v1/openapi.yaml", serveOpenAPI, RoleOperator, RoleOwner, RoleAuditor, RoleIngest)
}

func serveOpenAPI(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/yaml") // RFC 9512
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(openAPISpec)
}
