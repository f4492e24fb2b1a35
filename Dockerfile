# One image for the operator and the worker: static binaries on distroless,
# running as the non-root user 65532. The operator runs /manager; StreamPipeline
# pods run /worker from the same image unless the pipeline sets spec.image.
FROM golang:1.26 AS build
WORKDIR /src
ENV CGO_ENABLED=0 GOTOOLCHAIN=local
COPY go.mod go.sum ./
RUN go mod download
COPY api/ api/
COPY cmd/ cmd/
COPY controllers/ controllers/
COPY internal/ internal/
COPY worker/ worker/
RUN go build -trimpath -ldflags="-s -w" -o /out/manager ./cmd/manager \
 && go build -trimpath -ldflags="-s -w" -o /out/worker ./cmd/worker

FROM gcr.io/distroless/static:nonroot
COPY --from=build /out/manager /manager
COPY --from=build /out/worker /worker
USER 65532:65532
ENTRYPOINT ["/manager"]
