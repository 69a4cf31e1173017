#!/bin/sh
# Written on a host where /bin/sh is bash: [[ ]], arrays and ${var//x/y} fail under dash.
if [[ "$1" == "-c" ]]; then
    echo '{"metrics": [{"id": 1, "name": "Items", "datatype": "GAUGE", "dimensions": [{"id": 1, "name": "kind"}]}]}'
    exit 0
fi
items=(a b c)
name="one-two-three"
echo "M1 \"1:${name//-/_}\" ${#items[@]}"
