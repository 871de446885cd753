"""The Machines API client shared by the CLI, deploy, scale and drills."""

from roost.client.api import Api, api_target
from roost.client.errors import UserError

__all__ = ["Api", "UserError", "api_target"]
