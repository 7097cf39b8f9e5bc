"""newsarchive's Scrapy project: settings, the outlet registry, the spider, the CLI."""
