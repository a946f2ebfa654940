# Plug&Charge: P-256 ECDSA/ECDH, X.509 (DER), XMLDSig over EXI, contract-key transport.
