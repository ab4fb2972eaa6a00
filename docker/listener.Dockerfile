# The Sluice Swarm listener image (the stand-in for vfarcic/docker-flow-swarm-listener).
# Same root filesystem as the proxy image (scripts/build-images.sh stages it), so both images
# share their only layer; it runs `sluice listener` instead of `sluice proxy`.
# Mount /var/run/docker.sock (or set DF_DOCKER_HOST) and set DF_NOTIFY_*_SERVICE_URL.
FROM scratch
COPY rootfs/ /
# 8080: the listener API (/v1/docker-flow-swarm-listener/*, PORT).
EXPOSE 8080
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/sluice"]
CMD ["listener"]
