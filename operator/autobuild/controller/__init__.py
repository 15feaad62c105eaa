"""The operator: informers into one store, the reconcile around the pure core, and its writes."""
