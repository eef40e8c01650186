# pizzajoint/jaeger: Jaeger v2 v1.75.0 (OpenTelemetry Collector based) built from its pinned module (jaeger/build),
# all in one with in-memory storage, as a non-root user. meshctl rides along for the health check and the
# registration with the pod's Consul agent. Built by deploy/docker/build-images.sh (make dockerize).
FROM scratch
COPY tmp /tmp
COPY jaeger meshctl /usr/local/bin/
ENV HOME=/tmp
USER 10500:10500
ENTRYPOINT ["/usr/local/bin/jaeger"]
