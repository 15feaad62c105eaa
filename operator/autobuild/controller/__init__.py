"""The operator: kopf handlers (thin) around the pure core, and the Kubernetes effects they need."""
