"""Authentication and access control: who is asking, and what they may do.

Access controllers are registered by the name of their `auth` section (silly, htpasswd, token,
builtin). The API asks the configured one to authorize each request for the scopes its route
needs (moorage.auth.scopes); the controller answers with a Grant or raises a challenge.
"""
