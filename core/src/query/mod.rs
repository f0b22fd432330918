//! Queries: filters, sort, limit and skip, planned onto indexes where one fits.
