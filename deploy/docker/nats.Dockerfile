# pizzajoint/nats: NATS server v2.15.3 built from its pinned module (nats/build), one of the three JetStream
# servers, as a non-root user whose store folder it owns (named volumes take their owner from the image). meshctl
# rides along for the health check and the registration. Built by deploy/docker/build-images.sh (make dockerize).
FROM scratch
COPY tmp /tmp
COPY --chown=10400:10400 nats-home /nats
COPY nats-server meshctl /usr/local/bin/
ENV HOME=/tmp
USER 10400:10400
ENTRYPOINT ["/usr/local/bin/nats-server"]
