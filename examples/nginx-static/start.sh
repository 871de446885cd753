#!/bin/sh
# A static upstream for the proxy benchmark: nginx (one worker) answering "hello" on $FLY_PRIVATE_IP:$PORT.
set -e
cat > nginx.conf <<CONF
worker_processes 1;
pid $PWD/nginx.pid;
error_log stderr warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path $PWD/tmp;
    server {
        listen ${FLY_PRIVATE_IP:-127.0.0.1}:${PORT:-8080} reuseport;
        location / { return 200 "hello from ${FLY_MACHINE_ID:-nginx}\n"; }
    }
}
CONF
mkdir -p tmp
exec nginx -c "$PWD/nginx.conf" -p "$PWD" -g 'daemon off;'
