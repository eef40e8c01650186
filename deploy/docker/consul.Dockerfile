# pizzajoint/consul: Consul v1.22.3 built from its pinned module (consul/build), for the server, the client agent
# of each pod and the built-in Connect sidecars. meshctl rides along for the health checks (`meshctl probe`):
# the image has no shell, curl or wget. Built by deploy/docker/build-images.sh from bin/ (make dockerize).
FROM scratch
COPY tmp /tmp
COPY --chown=10100:10100 consul-home /consul
COPY consul meshctl /usr/local/bin/
ENV HOME=/tmp
USER 10100:10100
ENTRYPOINT ["/usr/local/bin/consul"]
