"""Several server nodes on one database: who is alive (registry), the links between
them (links), and the ends of sessions whose sockets reached another node (edge)."""
