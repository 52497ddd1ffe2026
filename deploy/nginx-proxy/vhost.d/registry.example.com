# nginx-proxy includes this file in the server block of the host it is named after: rename it
# to the registry's VIRTUAL_HOST. Pushes send layers of any size (nginx's default limit is
# 1 MiB) and stream them through rather than spooling them to disk first.
client_max_body_size 0;
proxy_request_buffering off;
proxy_buffering off;
proxy_read_timeout 900s;
proxy_send_timeout 900s;
