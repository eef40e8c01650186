# pizzajoint/devcerts: the development CA and listener certificates, written into Compose volumes. FROM scratch
# with the static binary, built from bin/ (make dockerize).
FROM scratch
COPY tmp /tmp
COPY devcerts /usr/local/bin/devcerts
USER 10300:10300
ENTRYPOINT ["/usr/local/bin/devcerts"]
