"""The control plane (`roost server`): Machines API, store, scheduler, failure detector, watch feed."""
