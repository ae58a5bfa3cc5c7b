"""File input and output: format sniffing, image and RAW readers, EXIF, atomic writes."""
