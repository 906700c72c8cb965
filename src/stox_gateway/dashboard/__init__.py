"""The dashboard served at `/`: a live view of workflows for a shop team (no build step)."""

from fastapi import APIRouter

router = APIRouter(include_in_schema=False)
