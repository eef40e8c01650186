# pizzajoint/gateway: the public HTTPS edge. A static binary FROM scratch (no shell, no package manager, nothing to pull),
# run as a numeric non-root user. Built by deploy/docker/build-images.sh from bin/ (make dockerize).
FROM scratch
COPY tmp /tmp
COPY gateway /usr/local/bin/gateway
USER 10002:10002
ENTRYPOINT ["/usr/local/bin/gateway"]
