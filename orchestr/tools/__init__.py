"""Tools an agent step may call: built-ins and MCP servers, all behind the permission gate."""
