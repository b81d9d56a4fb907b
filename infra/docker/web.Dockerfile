# syntax=docker/dockerfile:1.7
# web: the customers' single-page app (web/), built with npm and served by an
# unprivileged nginx. The Ingress sends `/` here and the API paths to the services.
#
# Build from the repository root:
#   DOCKER_BUILDKIT=1 docker build -f infra/docker/web.Dockerfile -t phonebill/web:dev .
# web.Dockerfile.dockerignore keeps node_modules, dist, target/ and .git out of the context.
# Runtime contract: non-root uid 10001, read-only root filesystem (writes only to /tmp),
# HTTP on 8080, /health/live and /health/ready, access log on stdout.

ARG NODE_VERSION=20

FROM node:${NODE_VERSION}-bookworm-slim AS build
WORKDIR /web
COPY web/package.json web/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY web/ ./
# Typecheck, vite build, and the first-load JavaScript budget (fails the build above it).
RUN npm run build

FROM nginxinc/nginx-unprivileged:1.27-bookworm AS runtime
COPY infra/docker/web/nginx.conf /etc/nginx/nginx.conf
COPY infra/docker/web/site.conf /etc/nginx/phonebill-site.conf
COPY --from=build /web/dist /usr/share/nginx/html
EXPOSE 8080
USER 10001:10001
# No HEALTHCHECK: Kubernetes ignores it; the chart's probes call /health/live and /health/ready.
# checkov:skip=CKV_DOCKER_2: health is checked by Kubernetes probes on /health/live and /health/ready
ENTRYPOINT ["nginx", "-g", "daemon off;"]
