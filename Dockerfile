# Image of the Akto API traffic collector: the .NET host plus its eBPF object.
#   docker build -t akto-collector:latest .
#
# No Docker engine runs on the project's CI, so this image cannot be built
# there. Both stages' real work is scripts/build-release.sh, which the Makefile
# calls too: CI exercises the same build steps.
#
# Base: Microsoft publishes no Debian images for .NET 10 (its tags are Ubuntu,
# Alpine and Azure Linux; "10.0-bookworm-slim" does not exist). The collector is
# built and tested on Debian 12 with Debian's libbpf 1.1, so both stages are
# debian:bookworm-slim with .NET 10 from Microsoft's Debian 12 package
# repository. librdkafka comes from NuGet (librdkafka.redist) inside the
# published folder, the same file the tests run on; it needs only glibc.

# ---------------------------------------------------------------------------
FROM debian:bookworm-slim AS build

ENV DOTNET_CLI_TELEMETRY_OPTOUT=1 \
    DOTNET_NOLOGO=1 \
    DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1

ADD https://packages.microsoft.com/config/debian/12/packages-microsoft-prod.deb /tmp/packages-microsoft-prod.deb
# clang llvm libbpf-dev bpftool make: the same packages `make deps` installs
# on a build host.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && dpkg -i /tmp/packages-microsoft-prod.deb && rm /tmp/packages-microsoft-prod.deb \
 && apt-get update \
 && apt-get install -y --no-install-recommends \
        dotnet-sdk-10.0 \
        clang llvm libbpf-dev bpftool make \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /src
# .dockerignore leaves out .git, build output (build/, bin/, obj/) but keeps a
# generated build/vmlinux.h if there is one.
COPY . .
# `make bpf` generates build/vmlinux.h from the BTF of the machine running the
# build (/sys/kernel/btf/vmlinux) unless the copied tree already has one. That
# does not tie the image to that kernel: CO-RE relocates the object at load
# time, so it runs on any kernel with BTF.
RUN scripts/build-release.sh /out

# ---------------------------------------------------------------------------
FROM debian:bookworm-slim

ADD https://packages.microsoft.com/config/debian/12/packages-microsoft-prod.deb /tmp/packages-microsoft-prod.deb
# The host loads "libbpf.so.1". No librdkafka package: the collector loads the
# one in its own folder (centos8-librdkafka.so beside the binary: the release is
# published ReadyToRun for linux-x64) and refuses any other.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && dpkg -i /tmp/packages-microsoft-prod.deb && rm /tmp/packages-microsoft-prod.deb \
 && apt-get update \
 && apt-get install -y --no-install-recommends \
        aspnetcore-runtime-10.0 \
        libbpf1 libelf1 zlib1g \
 && rm -rf /var/lib/apt/lists/*

COPY --from=build /out /opt/akto-collector
WORKDIR /opt/akto-collector
# /metrics, /healthz, /ready (METRICS_BIND)
EXPOSE 9176
ENTRYPOINT ["/opt/akto-collector/Collector"]
