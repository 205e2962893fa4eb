#!/bin/bash
# regiondrill lab shim for @TOOL@ on bastion @INSTANCE@ (generated; do not edit).
#
# The lab runs @TOOL@ for this bastion, from its VPC address, and sends back what the real tool
# would print. Arguments travel NUL-separated over one loopback connection to the lab's tool
# server; the token names the bastion and grants nothing else. Bash only: no interpreter start.
{ exec 3<>/dev/tcp/127.0.0.1/@PORT@; } 2>/dev/null || {
  echo "@TOOL@: the regiondrill lab is not reachable (tool server 127.0.0.1:@PORT@)" >&2
  exit @FAIL_RC@
}
if [ -t 1 ]; then __rd_tty=1; else __rd_tty=0; fi
printf 'RD1\0%s\0%s\0%s\0%s\0%s\0' @TOKEN@ @TOOL@ "$__rd_tty" "$PWD" "$#" >&3
if [ "$#" -gt 0 ]; then printf '%s\0' "$@" >&3; fi
# Byte counts below are bytes: read -N must not count UTF-8 characters.
LC_ALL=C
while IFS=' ' read -r __rd_kind __rd_len <&3; do
  case $__rd_kind in
    1 | 2)
      IFS= read -r -d '' -N "$__rd_len" __rd_data <&3
      printf '%s' "$__rd_data" >&"$__rd_kind"
      ;;
    B1 | B2)
      head -c "$__rd_len" <&3 >&"${__rd_kind#B}"
      ;;
    x)
      exec 3<&-
      exit "$__rd_len"
      ;;
  esac
done
echo "@TOOL@: the regiondrill lab closed the connection before @TOOL@ finished" >&2
exit @FAIL_RC@
