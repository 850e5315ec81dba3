# meshauthd container image, for builders with a registry at hand (docker build, buildah bud,
# podman build). scripts/build-image.sh assembles the same image from Debian packages with
# mmdebstrap and umoci where no registry or container daemon is available.
#
#   docker build -t meshauthd:0.1.0 .

# Versions: Node 24 LTS, wireguard-go release 0.0.20250522 (the proxy's pseudo-version of its commit).
ARG NODE_IMAGE=node:24-bookworm
ARG NODE_RUNTIME_IMAGE=node:24-bookworm-slim
ARG GO_IMAGE=golang:1.26-bookworm
ARG WIREGUARD_GO_VERSION=v0.0.0-20260522210424-ecfc5a8d5446

# 1. wireguard-go, statically linked.
FROM ${GO_IMAGE} AS wireguard-go
ARG WIREGUARD_GO_VERSION
RUN CGO_ENABLED=0 GOBIN=/out go install -trimpath -ldflags '-s -w' \
      golang.zx2c4.com/wireguard@${WIREGUARD_GO_VERSION} \
 && /out/wireguard --version

# 2. The BPF object, the JavaScript and the production dependencies.
FROM ${NODE_IMAGE} AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends clang llvm libbpf-dev linux-libc-dev make \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY bpf ./bpf
COPY proto ./proto
COPY src ./src
COPY bench ./bench
COPY demo ./demo
# bench/ and demo/ (compiled with the daemon) import test helpers.
COPY test ./test
COPY bin ./bin
RUN make -s -C bpf meshauth.bpf.o \
 && npx tsc -p tsconfig.build.json \
 && npm prune --omit=dev \
 && node -e "require('better-sqlite3')(':memory:').close(); require('koffi')"

# 3. Run time: Node, libbpf, ip, wg and wireguard-go; no compiler, no headers, no npm cache.
FROM ${NODE_RUNTIME_IMAGE}
RUN apt-get update \
 && apt-get install -y --no-install-recommends libbpf1 iproute2 wireguard-tools tini \
 && rm -rf /var/lib/apt/lists/* /usr/share/doc/* /usr/share/man/*
COPY --from=wireguard-go /out/wireguard /usr/local/bin/wireguard-go
WORKDIR /opt/meshauth
COPY --from=build /src/package.json /src/package-lock.json ./
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/bin ./bin
COPY --from=build /src/proto ./proto
COPY --from=build /src/dist/src ./dist/src
COPY --from=build /src/bpf/meshauth.bpf.o ./bpf/meshauth.bpf.o
RUN ln -s /opt/meshauth/bin/meshauthd.js /usr/local/bin/meshauthd \
 && ln -s /opt/meshauth/bin/meshauth.js /usr/local/bin/meshauth \
 && meshauthd --help >/dev/null && meshauth --version
ENV NODE_ENV=production
# tini reaps wireguard-go, which daemonizes and is re-parented to PID 1.
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/meshauthd"]
