# The demo backends image (the stand-in for vfarcic/go-demo, and for mongo/redis in the
# walkthrough): `sluice-demo http --port 8080` by default; `tcp --port 6379` for a redis-like
# PING/PONG server. Built FROM scratch by scripts/build-images.sh (binary + ldd libraries).
FROM scratch
COPY rootfs/ /
EXPOSE 8080
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/sluice-demo"]
CMD ["http", "--port", "8080"]
