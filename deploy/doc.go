// Package deploy holds the tests of authgate's deployment material: the
// Kubernetes manifests under kubernetes/, the Helm chart under
// helm/authgate, the Dockerfile and README.md. It is a module of its own so
// that the gateway's module does not depend on Helm.
//
// Run the tests from this directory: go test ./...
package deploy
