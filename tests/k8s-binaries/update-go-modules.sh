#!/usr/bin/env bash
# Regenerates the go.mod/go.sum of the three Go modules from pins.env.
# Run it after changing a pin, then commit pins.env, go.mod and go.sum together.
# Needs the Go toolchain and the Go module proxy; builds nothing.
set -euo pipefail
cd "$(dirname "$0")"
# shellcheck source=pins.env
source ./pins.env

# k8s.io/kubernetes requires its staging modules at v0.0.0 and replaces them with
# ./staging paths, which do not exist outside its repository: pin each one to the
# staging release of the same Kubernetes version.
staging_modules=$(curl -fsSL "${GOPROXY%%,*}/k8s.io/kubernetes/@v/${KUBERNETES_VERSION}.mod" |
  sed -n 's|^\t\(k8s.io/[a-z0-9-]*\) => ./staging/.*|\1|p')
(
  cd kubernetes
  rm -f go.mod go.sum
  go mod init github.com/emqx-operator-rs/sandbox/k8s-binaries/kubernetes
  go mod edit -go=1.25.0
  for m in $staging_modules; do
    go mod edit -replace="$m=$m@${KUBERNETES_STAGING_VERSION}"
  done
  go mod edit -require="k8s.io/kubernetes@${KUBERNETES_VERSION}"
  go mod tidy
)
(
  cd etcd
  rm -f go.mod go.sum
  go mod init github.com/emqx-operator-rs/sandbox/k8s-binaries/etcd
  go mod edit -require="go.etcd.io/etcd/server/v3@${ETCD_VERSION}"
  go mod tidy
)
(
  cd helm
  rm -f go.mod go.sum
  go mod init github.com/emqx-operator-rs/sandbox/k8s-binaries/helm
  go get -tool "helm.sh/helm/v3/cmd/helm@${HELM_VERSION}"
  go mod tidy
)
