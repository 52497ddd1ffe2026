#!/bin/sh
# The image's entrypoint. As in the reference image, a config file as the first argument is
# served (CMD gives the default one) and a moorage command runs as is; anything else is
# executed, so `docker run IMAGE sh` gives a shell. `serve` and `config check` without a config
# file use the image's; `health` without one probes the config the container serves (the
# HEALTHCHECK).
set -e

DEFAULT_CONFIG=/etc/docker/registry/config.yml

# The config file the container was started with: the last argument of PID 1 naming a YAML file
# (PID 1 is moorage itself, or an init such as docker-init running this script), else the default.
served_config() {
    config=$DEFAULT_CONFIG
    while IFS= read -r arg; do
        case $arg in *.yml | *.yaml) config=$arg ;; esac
    done <<ARGS
$(tr '\0' '\n' </proc/1/cmdline)
ARGS
    printf '%s\n' "$config"
}

names_config() {
    for arg in "$@"; do
        case $arg in *.yml | *.yaml) return 0 ;; esac
    done
    return 1
}

case "$1" in
    health)
        names_config "$@" || set -- "$@" "$(served_config)"
        exec moorage "$@"
        ;;
    serve | config)
        names_config "$@" || set -- "$@" "$DEFAULT_CONFIG"
        exec moorage "$@"
        ;;
    *.yml | *.yaml) exec moorage serve "$@" ;;
    user | acl | --help | --version) exec moorage "$@" ;;
    -*) exec moorage serve "$@" ;;
esac
exec "$@"
