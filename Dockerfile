# flo in a small image: build with the Rust toolchain, run on Debian slim as a non-root user.
#   docker build -t flo .
#   docker run -d -p 3000:3000 -v flo-data:/var/lib/flo flo
# ci/dockerfile_steps.sh runs these same steps in a temporary directory (docker build is not
# available in CI), so keep the two in step.

FROM rust:1-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin flo --bin flo-client \
 && install -D -m 755 target/release/flo target/release/flo-client -t /out/usr/local/bin \
 && mkdir -p /out/usr/share/man/man1 /out/usr/share/bash-completion/completions \
 && /out/usr/local/bin/flo man > /out/usr/share/man/man1/flo.1 \
 && /out/usr/local/bin/flo completions bash > /out/usr/share/bash-completion/completions/flo

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --home-dir /var/lib/flo --shell /usr/sbin/nologin flo \
 && mkdir -p /var/lib/flo && chown flo:flo /var/lib/flo
COPY --from=build /out/ /
USER flo
VOLUME /var/lib/flo
EXPOSE 3000
# Listens on every interface inside the container, without client authentication (flo refuses a
# non-loopback address without --auth-file or --insecure-no-auth): publish the port only where
# clients are (`-p 127.0.0.1:3000:3000`), or run with an auth file (docs/operations.md).
CMD ["flo", "--data-dir", "/var/lib/flo", "--bind", "0.0.0.0", "--port", "3000", "--insecure-no-auth"]
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 \
  CMD ["flo-client", "-H", "127.0.0.1:3000", "--timeout", "3s", "status"]
