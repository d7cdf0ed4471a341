#!/bin/sh
# Make a self-signed certificate for local use: nginx/self-signed-cert.sh NAME DIR
# writes DIR/NAME.crt and DIR/NAME.key (EC P-256, 30 days, valid for NAME,
# localhost and 127.0.0.1). Browsers will warn; clients can trust DIR/NAME.crt.
set -eu
name=${1:?usage: $0 NAME DIR}
dir=${2:?usage: $0 NAME DIR}
mkdir -p "$dir"
umask 077
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -days 30 -subj "/CN=$name" \
    -addext "subjectAltName=DNS:$name,DNS:localhost,IP:127.0.0.1" \
    -addext "basicConstraints=critical,CA:FALSE" \
    -addext "keyUsage=critical,digitalSignature" \
    -addext "extendedKeyUsage=serverAuth" \
    -keyout "$dir/$name.key" -out "$dir/$name.crt" 2>/dev/null
chmod 644 "$dir/$name.crt"
echo "$dir/$name.crt"
