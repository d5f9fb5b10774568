#!/bin/sh
# seriesgate L2 guest agent (busybox sh): serve the line protocol of
# seriesgate/testenv/agent.py on the serial port $1 until it closes.
#   SGPING <nonce>          -> SGPONG <nonce>
#   SGRUN <nonce> <base64>  -> SGBEGIN <nonce> / base64 of stdout+stderr / SGEND <nonce> <status>
# Anything else (noise, echoes from before the tty was raw) is ignored.
tty="$1"
work="${SGAGENT_WORK:-/sg}"
mkdir -p "$work"
stty -F "$tty" raw -echo -echoe -echok -echoctl -echoke 2>/dev/null
exec 3<"$tty" 4>"$tty"
echo "SGREADY" >&4  # tells a waiting host to ping now
while read -r verb nonce arg <&3; do
  case "$verb" in
    SGPING) echo "SGPONG $nonce" >&4 ;;
    SGRUN)
      if echo "$arg" | base64 -d > "$work/cmd" 2>/dev/null; then
        (cd "${HOME:-/}" 2>/dev/null || cd /; exec sh "$work/cmd") </dev/null >"$work/out" 2>&1
        st=$?
      else
        echo "sgagent: undecodable command" > "$work/out"
        st=126
      fi
      { echo "SGBEGIN $nonce"; base64 "$work/out"; echo "SGEND $nonce $st"; } >&4
      ;;
  esac
done
