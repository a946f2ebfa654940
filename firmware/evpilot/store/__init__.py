# The certificate and key store on the board's filesystem: V2G roots, the OEM provisioning chain and key,
# contract chains and keys, small metadata. See keystore.py for the layout and the power-loss design.
