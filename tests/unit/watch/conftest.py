"""The watch's agent is imported as the role ships it (roles/oom_watch/files on sys.path)."""

from support.cgroup_tree import agent_on_path

agent_on_path()
