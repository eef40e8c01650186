# pizzajoint/meshctl: the provisioning program. One image, three uses in Compose: the one-shot `setup` (run as
# root: it writes each pod's credentials owned by that pod's user), the Consul UI's `serve-front`, and `pause`,
# the owner of a pod's network namespace. FROM scratch with the static binary, built from bin/ (make dockerize).
FROM scratch
COPY tmp /tmp
COPY meshctl /usr/local/bin/meshctl
USER 10300:10300
ENTRYPOINT ["/usr/local/bin/meshctl"]
CMD ["pause"]
