"""The rules of the model, apart from the API that exposes them and the processes that run
them: VM states and the lifecycle, host capacity, history records, images, networks and their
leases, security groups, VDCs, permissions and ACL rules, the operations queued for the core."""
