#!/bin/sh
# As the official image's 20-envsubst-on-templates.sh: render each
# /etc/nginx/templates/NAME.template into /etc/nginx/conf.d/NAME, substituting only the
# environment variables whose names match NGINX_ENVSUBST_FILTER.
set -eu
for template in /etc/nginx/templates/*.template; do
    [ -e "$template" ] || continue
    names=$(env | cut -d= -f1 | grep -E "${NGINX_ENVSUBST_FILTER:-.}" | sed 's/^/$/' | tr '\n' ' ')
    envsubst "$names" < "$template" > "/etc/nginx/conf.d/$(basename "$template" .template)"
done
exec "$@"
