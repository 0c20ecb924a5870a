"""Writes of the accounts app, one module per sub-domain (import from the module that owns it):

- ``users``: sign-up and email verification
- ``organizations``: creating and renaming organizations
- ``memberships``: members and their roles (the owner rules)
- ``invitations``: inviting, revoking, accepting
- ``api_keys``: the API-key lifecycle (create, revoke, rotate) and the "last used" flush
- ``audit``: the audit trail every other module writes to

Every service is keyword-only and does its writes in one transaction. Emails and the publication of
API-key state to Redis happen with ``transaction.on_commit`` so nobody sees uncommitted rows (the
invitation email is the exception: see ``invitations.invitation_create``).
"""
