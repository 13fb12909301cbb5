#!/usr/bin/env bash
# Makes what a hardened deployment needs, in DIR: a CA, a certificate for the dispatcher
# signed by it, and a login secret. For a test setup, or a first one; an operator with a PKI
# of their own puts its files under the same names instead.
#
# Usage: deploy/make-secrets.sh DIR [NAME...]
#   NAME: the host names and IP addresses the dispatcher is dialled by (default: dispatcher,
#   proofrace-dispatcher, proofrace-dispatcher.proofrace.svc, localhost, 127.0.0.1).
# Writes:
#   DIR/ca.crt             the CA certificate: give it to clients (--tls-ca) and workers
#   DIR/tls.crt, tls.key   the dispatcher's certificate and key
#   DIR/login              the clients' login secret (--credential-file)
#   DIR/worker             the workers' credential (dispatcher and workers; never a client's)
#   DIR/ca/ca.key          the CA's key: keep it elsewhere; nothing running needs it
# Files are readable by group 10001 (the image's user) where this script may set that.
set -euo pipefail
dir="${1:?usage: $0 DIR [NAME...]}"
shift
names=("$@")
((${#names[@]})) || names=(dispatcher proofrace-dispatcher proofrace-dispatcher.proofrace.svc
  localhost 127.0.0.1)
san=""
for name in "${names[@]}"; do
  if [[ "$name" =~ ^[0-9.]+$ || "$name" == *:* ]]; then kind=IP; else kind=DNS; fi
  san+="${san:+,}$kind:$name"
done
mkdir -p "$dir/ca"
chmod 0700 "$dir/ca"
days="${PROOFRACE_CERT_DAYS:-365}"
openssl req -x509 -newkey rsa:3072 -nodes -days "$days" -subj "/CN=proofrace CA" \
  -keyout "$dir/ca/ca.key" -out "$dir/ca.crt" 2>/dev/null
openssl req -newkey rsa:3072 -nodes -subj "/CN=${names[0]}" \
  -keyout "$dir/tls.key" -out "$dir/tls.csr" 2>/dev/null
printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth\n' "$san" >"$dir/tls.ext"
openssl x509 -req -in "$dir/tls.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca/ca.key" \
  -CAcreateserial -days "$days" -extfile "$dir/tls.ext" -out "$dir/tls.crt" 2>/dev/null
rm -f "$dir/tls.csr" "$dir/tls.ext" "$dir/ca.srl"
# 32 random bytes, hex: the server wants at least 16.
openssl rand -hex 32 >"$dir/login"
openssl rand -hex 32 >"$dir/worker"
chmod 0640 "$dir/tls.key" "$dir/login" "$dir/worker"
chmod 0644 "$dir/ca.crt" "$dir/tls.crt"
if ! chgrp 10001 "$dir/tls.key" "$dir/login" "$dir/worker" 2>/dev/null; then
  echo "make-secrets: could not give the files to group 10001: run as root, or" \
    "chgrp 10001 $dir/tls.key $dir/login $dir/worker yourself" >&2
fi
echo "make-secrets: $dir: ca.crt, tls.crt and tls.key (for ${names[*]}), login, worker"
