"""billing: invoices for what the shop sells."""
from billing.invoice import Invoice, Line, invoice_number

__all__ = ["Invoice", "Line", "invoice_number"]
