"""autobuild: Docker Hub-style Automated Builds for any Kubernetes cluster."""

API_GROUP = "autobuild.dev"
API_VERSION = "v1alpha1"
KIND = "AutomatedBuild"
PLURAL = "automatedbuilds"

__version__ = "0.1.0"
