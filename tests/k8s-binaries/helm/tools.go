// Package helmbuild pins Helm. The binary is built from the upstream main
// package helm.sh/helm/v3/cmd/helm (declared as a `tool` in go.mod), in its
// own module because Helm links newer k8s.io client libraries than the
// Kubernetes release the control plane is built from.
package helmbuild
