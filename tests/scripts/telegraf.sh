#!/bin/bash
# A Telegraf exec script: InfluxDB line protocol, no -c/-d.
echo '# comment lines are skipped'
echo 'disk,path=/,fstype=ext4 used_percent=42.5,inodes_free=1000i 1700000000000000000'
echo 'app\ stats,env=prod\,eu,host=web\ 1 requests=17i,up=true,version="1.2 \"beta\""'
echo 'cpu usage_idle=97.5 1700000000'
echo 'weather temperature=cold'
printf 'crlf value=1\r\n'
