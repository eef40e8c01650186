# pizzajoint/order: the order service (ENTRYPOINT order, CMD serve; `migrate` and `rewrap-pii` too). A static binary FROM scratch (no shell, no package manager, nothing to pull),
# run as a numeric non-root user. Built by deploy/docker/build-images.sh from bin/ (make dockerize).
FROM scratch
COPY tmp /tmp
COPY order /usr/local/bin/order
USER 10001:10001
ENTRYPOINT ["/usr/local/bin/order"]
CMD ["serve"]
