# SPDX-License-Identifier: Apache-2.0
# The linkguard image: `docker build -t linkguard:0.1.0 .` (BuildKit, the default builder since Docker 23).
#
# Two stages:
#   builder  the pinned Rust toolchain (rust-toolchain.toml) on Debian bookworm, with clang-19 and libbpf-dev
#            for the BPF object (bpf/build.rs); builds `linkguard` and assembles the runtime file tree.
#   runtime  FROM scratch: the binary, the three glibc files it links (libc, libgcc_s, the loader; see
#            `ldd target/release/linkguard`), CA certificates for registries over HTTPS, and passwd/group
#            entries for uid 65532. Nothing else: no shell, no package manager. The libraries come from the
#            builder itself, so the runtime glibc is the one the binary was linked against.
#
# How the capabilities reach a non-root process
# ---------------------------------------------
# The sidecar runs as uid 65532 and needs CAP_BPF and CAP_PERFMON (load the BPF program, create the
# uprobe.multi links; Linux 5.8+) and CAP_SYS_PTRACE (open /proc/<pid>/root and /proc/<pid>/maps of the
# app's processes). Kubernetes and Docker put the capabilities a container adds (securityContext
# capabilities.add, compose cap_add) into its bounding set, but a non-root process gets none of them at
# exec: runtimes clear its permitted and effective sets and Kubernetes has no ambient capabilities. So the
# binary carries file capabilities, `cap_bpf,cap_perfmon,cap_sys_ptrace=p`, set in the runtime stage below:
# at exec the kernel puts those that are in the bounding set into the permitted set, and `sidecar`,
# `observe` and `doctor` make them effective (sidecar/src/cli/capabilities.rs). Without the effective bit
# the kernel does not refuse the exec when one is missing, so the image's other commands run in any
# container, and `doctor` names what is missing. Hence, for the container:
#   - add BPF, PERFMON and SYS_PTRACE and drop ALL others: only what is in the bounding set is granted;
#   - do not set no_new_privs (Kubernetes allowPrivilegeEscalation: false, Docker
#     --security-opt no-new-privileges): under it file capabilities are not granted to a non-root process;
#   - or run the container as uid 0 with the same three capabilities and no_new_privs; the file
#     capabilities are then unused. docs/runbook.md has both, and the kernel versions.
# `docker run --rm --cap-drop ALL --cap-add BPF --cap-add PERFMON --cap-add SYS_PTRACE linkguard:0.1.0 doctor`
# shows what the process holds and proves a real attach.

FROM rust:1.98.0-bookworm AS builder
SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# clang-19 + libbpf-dev: the BPF object (bpf/build.rs); libcap2-bin: setcap for the runtime stage.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends clang-19 libbpf-dev libcap2-bin \
 && rm -rf /var/lib/apt/lists/*

# The image's toolchain is the one rust-toolchain.toml pins (tests/deploy.rs checks the FROM tag against
# it); naming it keeps rustup from fetching the file's extra components (rustfmt, clippy) during the build.
ENV RUSTUP_TOOLCHAIN=1.98.0 \
    CARGO_TERM_COLOR=never

WORKDIR /src
COPY . .

# Build, then assemble the runtime tree under /out: the binary, every file `ldd` names (dereferenced, at
# the same paths), CA certificates and the nonroot user. /out/setcap holds setcap with its loader and
# libraries at fixed paths for the runtime stage to run once, from a bind mount.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    set -eu; \
    cargo build --release --locked -p linkguard; \
    bin=target/release/linkguard; \
    install -D -m 0755 "$bin" /out/root/usr/local/bin/linkguard; \
    libs=$(ldd "$bin" | grep -o '/[^ ]*'); \
    for lib in $libs; do cp -L --parents "$lib" /out/root/; done; \
    install -D -m 0644 /etc/ssl/certs/ca-certificates.crt /out/root/etc/ssl/certs/ca-certificates.crt; \
    printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' \
      > /out/root/etc/passwd; \
    printf 'root:x:0:\nnonroot:x:65532:\n' > /out/root/etc/group; \
    install -d -m 0755 /out/root/etc/linkguard/config /out/root/etc/linkguard/signing /out/root/etc/linkguard/registry; \
    install -d -m 0750 /out/state/observations /out/state/spool; \
    install -d /out/setcap/lib; \
    cp -L /usr/sbin/setcap /out/setcap/setcap; \
    libs=$(ldd /usr/sbin/setcap | grep -o '/[^ ]*'); \
    for lib in $libs; do cp -L "$lib" /out/setcap/lib/; done; \
    loader=$(ldd /usr/sbin/setcap | grep -o '/[^ ]*ld-linux[^ ]*'); \
    cp -L "$loader" /out/setcap/ld.so; \
    /out/root/usr/local/bin/linkguard --version

FROM scratch AS runtime

ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="linkguard" \
      org.opencontainers.image.description="Proves which functions of a container actually execute, and publishes that proof signed next to the image" \
      org.opencontainers.image.source="https://github.com/linkguard/linkguard" \
      org.opencontainers.image.url="https://github.com/linkguard/linkguard" \
      org.opencontainers.image.documentation="https://github.com/linkguard/linkguard/blob/main/docs/runbook.md" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.vendor="linkguard" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}"

COPY --from=builder /out/root/ /
COPY --from=builder --chown=65532:65532 /out/state/ /var/lib/linkguard/

# File capabilities on the binary (see the top of this file), set in this stage so that they are in this
# layer's own files rather than relying on COPY to carry extended attributes. setcap runs from a bind mount
# of the builder's files and leaves nothing behind; `-v` makes the second run fail the build if the
# capabilities are not there.
RUN --mount=type=bind,from=builder,source=/out/setcap,target=/.setcap \
    ["/.setcap/ld.so", "--library-path", "/.setcap/lib", "/.setcap/setcap", "cap_bpf,cap_perfmon,cap_sys_ptrace=p", "/usr/local/bin/linkguard"]
RUN --mount=type=bind,from=builder,source=/out/setcap,target=/.setcap \
    ["/.setcap/ld.so", "--library-path", "/.setcap/lib", "/.setcap/setcap", "-v", "cap_bpf,cap_perfmon,cap_sys_ptrace=p", "/usr/local/bin/linkguard"]

ENV PATH=/usr/local/bin \
    HOME=/home/nonroot
USER 65532:65532
EXPOSE 9464
ENTRYPOINT ["linkguard"]
CMD ["sidecar", "--config", "/etc/linkguard/linkguard.yaml"]
