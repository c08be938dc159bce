"""The session: RSP requests in kgdb's terms, replies out (Linux's gdbstub.c).

Sans-I/O: the server feeds it packet payloads and carries out the actions
it returns. Dialects differ only in their Dialect object.
"""
