# The Sluice proxy image (the stand-in for vfarcic/docker-flow-proxy).
# Built FROM scratch by scripts/build-images.sh, which stages `rootfs/` in the build context:
# the `sluice` binary in /usr/local/bin, the shared libraries `ldd` lists for it (and the
# dynamic loader) at their paths, and a minimal /etc/nsswitch.conf. Nothing is pulled.
FROM scratch
COPY rootfs/ /
ENV DATA_DIR=/var/lib/sluice
# 80: HTTP data plane (DEFAULT_PORTS); 443 when certificates are used; 8080: control API (PORT).
EXPOSE 80 443 8080
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/sluice"]
CMD ["proxy"]
