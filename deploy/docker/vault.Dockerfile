# pizzajoint/vault: Vault v1.21.0 built from its pinned module (vault/build), as a non-root user with its data
# and audit folders owned by it (named volumes take their owner from the image). meshctl rides along for the
# health check. Built by deploy/docker/build-images.sh from bin/ (make dockerize).
FROM scratch
COPY tmp /tmp
COPY --chown=10200:10200 vault-home /vault
COPY vault meshctl /usr/local/bin/
ENV HOME=/tmp
USER 10200:10200
ENTRYPOINT ["/usr/local/bin/vault"]
