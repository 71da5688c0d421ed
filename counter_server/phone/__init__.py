"""The consumers' phone page (/q) and the QR codes on hall boards that open it."""
